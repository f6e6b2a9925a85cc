"""Pre-training objectives (DESIGN.md section 3): ITC + ITM + MLM (ALBEF) + PQVM (HCMRM).

Items without frames (text corpora) take part in MLM and PQVM only; ITC and ITM use the items with frames.
- ITC: vision CLS (mean over frames) vs text CLS, learned temperature; with config.use_momentum, soft
  targets from an EMA copy of the model and a queue of its past features (ALBEF).
- ITM: (text, frames) matched or not; for each text a hard-negative video, for each video a hard-negative
  text, drawn from the in-batch ITC similarity.
- MLM: whole-word-masked context text, fused with the frames, predicts the masked tokens.
- PQVM: `[CLS] pseudo-query [SEP] context text [SEP]` + frames, matched or not (binary cross-entropy);
  negatives drawn from the pseudo-query vs context-text similarity of the text encoder's CLS features.
A term with no eligible items (or weight 0) is 0. LossWeights(pqvm=0) is plain ALBEF.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hcmrm.train.batching import PretrainBatch, pack_pairs
from hcmrm.train.momentum import FeatureQueue, Momentum
from hcmrm.train.masking import IGNORE
from hcmrm.model.network import HCMRM, VideoMemory
from hcmrm.train.negatives import sample_hard_negatives, similarity


@dataclass
class LossWeights:
    itc: float = 1.0  # image-text contrastive
    itm: float = 1.0  # image-text matching with hard negatives
    mlm: float = 1.0  # whole-word masked language modelling
    pqvm: float = 1.0  # pseudo-query-video matching; 0 = ALBEF-style pre-training


@dataclass
class PretrainOutput:
    loss: torch.Tensor  # weighted sum, what to backpropagate
    itc: torch.Tensor  # each term unweighted (0 when it had no eligible items)
    itm: torch.Tensor
    mlm: torch.Tensor
    pqvm: torch.Tensor


class Pretrainer(nn.Module):
    def __init__(self, model: HCMRM, weights: LossWeights = LossWeights()):
        super().__init__()
        self.model = model
        self.weights = weights
        config = model.config
        self.momentum = Momentum(model, config.momentum) if config.use_momentum else None
        self.queue = FeatureQueue(config.queue_size, config.embed_dim) if config.queue_size else None

    def forward(self, batch: PretrainBatch, generator: torch.Generator | None = None) -> PretrainOutput:
        """All four losses on one batch; `generator` fixes the hard-negative draws."""
        model, w = self.model, self.weights
        video = model.encode_video(batch.frames, batch.frame_mask)
        text = model.encode_text(batch.text_ids, batch.text_mask)
        text_feat = model.heads.text_feature(text[:, 0])
        zero = text.new_zeros((), dtype=torch.float32)
        itc = itm = mlm = pqvm = zero

        with_frames = video.has_frames.nonzero().squeeze(1)  # ITC and ITM items
        sim_t2v = sim_v2t = None
        if w.itc or w.itm:
            itc, sim_t2v, sim_v2t = self.contrastive(batch, video, text_feat, with_frames)
        if w.itm and len(with_frames) >= 2:
            itm = self.matching(batch, video, text, with_frames, sim_t2v, sim_v2t, generator)
        if w.mlm:
            mlm = self.masked_lm(batch, video)
        if w.pqvm and len(text) >= 2:
            pqvm = self.pseudo_query_matching(batch, video, text_feat, generator)
        loss = w.itc * itc + w.itm * itm + w.mlm * mlm + w.pqvm * pqvm
        return PretrainOutput(loss=loss, itc=itc, itm=itm, mlm=mlm, pqvm=pqvm)

    # --- ITC -----------------------------------------------------------------------------------
    def contrastive(self, batch: PretrainBatch, video: VideoMemory, text_feat: torch.Tensor, idx: torch.Tensor):
        """ITC over the items with frames -> (loss, in-batch text->video and video->text similarities)."""
        heads = self.model.heads
        n = len(idx)
        queued = self.queue.features() if self.queue is not None else None
        if n < 2 and not (n and queued is not None and len(queued[0])):
            return text_feat.new_zeros(()), None, None
        temp = heads.temperature()
        v_feat = heads.vision_feature(video.pooled[idx])
        t_feat = text_feat[idx]
        v_all, t_all, targets_v2t, targets_t2v = v_feat, t_feat, None, None
        if self.momentum is not None:
            with torch.no_grad():
                if self.training:
                    self.momentum.update(self.model)
                m = self.momentum.model
                v_m = m.heads.vision_feature(m.encode_video(batch.frames[idx], batch.frame_mask[idx], keys_values=False).pooled)
                t_m = m.heads.text_feature(m.encode_text(batch.text_ids[idx], batch.text_mask[idx])[:, 0])
                v_all, t_all = v_m, t_m
                if queued is not None:
                    v_all, t_all = torch.cat([v_m, queued[0]]), torch.cat([t_m, queued[1]])
                alpha = self.model.config.distill_alpha
                hard = torch.eye(n, v_all.shape[0], device=v_m.device)
                targets_v2t = alpha * similarity(v_m, t_all, temp).softmax(1) + (1 - alpha) * hard
                targets_t2v = alpha * similarity(t_m, v_all, temp).softmax(1) + (1 - alpha) * hard
        sim_v2t_all = similarity(v_feat, t_all, temp)
        sim_t2v_all = similarity(t_feat, v_all, temp)
        if targets_v2t is None:
            labels = torch.arange(n, device=v_feat.device)
            loss = (F.cross_entropy(sim_v2t_all, labels) + F.cross_entropy(sim_t2v_all, labels)) / 2
        else:
            loss = -(
                (F.log_softmax(sim_v2t_all, 1) * targets_v2t).sum(1).mean()
                + (F.log_softmax(sim_t2v_all, 1) * targets_t2v).sum(1).mean()
            ) / 2
            if self.queue is not None and self.training:
                self.queue.push(v_m, t_m)
        # in-batch similarities for hard negatives, with the current (not momentum) features
        return loss, similarity(t_feat, v_feat, temp).detach(), similarity(v_feat, t_feat, temp).detach()

    # --- ITM -----------------------------------------------------------------------------------
    def matching(self, batch, video, text, idx, sim_t2v, sim_v2t, generator) -> torch.Tensor:
        """Positives, a hard-negative video per text, a hard-negative text per video -> 2-way cross-entropy."""
        model = self.model
        neg_video = idx[sample_hard_negatives(sim_t2v, generator)]
        neg_text = idx[sample_hard_negatives(sim_v2t, generator)]
        text_rows = torch.cat([idx, idx, neg_text])
        video_rows = torch.cat([idx, neg_video, idx])
        fused = model.fuse(text[text_rows], batch.text_mask[text_rows], video.index_select(video_rows))
        logits = model.heads.itm(fused[:, 0]).float()
        labels = torch.zeros(len(text_rows), dtype=torch.long, device=logits.device)
        labels[: len(idx)] = 1
        return F.cross_entropy(logits, labels)

    # --- MLM -----------------------------------------------------------------------------------
    def masked_lm(self, batch: PretrainBatch, video: VideoMemory) -> torch.Tensor:
        """Masked context text fused with its frames (the "no image" token for text-only items)."""
        model = self.model
        chosen = batch.mlm_labels != IGNORE
        if not chosen.any():
            return video.embeds.new_zeros((), dtype=torch.float32)
        hidden = model.fuse(model.encode_text(batch.mlm_ids, batch.text_mask), batch.text_mask, video)
        logits = model.heads.mlm(hidden[chosen], model.embeddings.word.weight).float()  # only masked tokens
        return F.cross_entropy(logits, batch.mlm_labels[chosen])

    # --- PQVM ----------------------------------------------------------------------------------
    def pseudo_query_matching(self, batch: PretrainBatch, video: VideoMemory, text_feat: torch.Tensor,
                              generator) -> torch.Tensor:
        """(pseudo-query, context text + frames) matched or not, binary cross-entropy, hard negatives."""
        model = self.model
        n = batch.query_ids.shape[0]
        with torch.no_grad():
            query_feat = model.heads.text_feature(model.encode_text(batch.query_ids, batch.query_mask)[:, 0])
            sim_q2c = similarity(query_feat, text_feat, model.heads.temperature())
        neg_context = sample_hard_negatives(sim_q2c, generator)  # another video for each pseudo-query
        neg_query = sample_hard_negatives(sim_q2c.T, generator)  # another pseudo-query for each video
        rows = torch.arange(n, device=batch.query_ids.device)
        query_rows = torch.cat([rows, rows, neg_query])
        video_rows = torch.cat([rows, neg_context, rows])
        pairs = pack_pairs(batch.query_ids[query_rows], batch.query_mask[query_rows],
                           batch.text_ids[video_rows], batch.text_mask[video_rows])
        fused = model.fuse(model.encode_text(**pairs), pairs["attention_mask"], video.index_select(video_rows))
        logits = model.heads.pqvm(fused[:, 0]).float().squeeze(1)
        labels = torch.zeros_like(logits)
        labels[:n] = 1
        return F.binary_cross_entropy_with_logits(logits, labels)
