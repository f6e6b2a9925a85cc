"""register-model: a saved model folder -> a new version of the registered model (and maybe `champion`).

    hcmrm register-model [--path hcmrm/models/kuake-small-match] [--champion if-none|always|never]

The folder is what `hcmrm.model.checkpoint.save_model` writes (config.json + model.safetensors); it
is loaded once here, so a broken folder fails before anything is registered. The default path is
the model shipped in the package (its MODEL_CARD.md says how it was trained and what it measures).
With `--champion if-none` (the default) the new version becomes `champion` only when no version
holds the alias yet: `make demo` starts from the shipped model, and its own fine-tune must then win
the gate to replace it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hcmrm.settings import SHIPPED_MODEL_DIR
from jobs.common import script_main, settings_from_args

COMMAND = "register-model"
HELP = "register a saved model folder (default: the shipped model) as a new version; champion if none yet"
EXPERIMENT = "hcmrm-register"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", type=Path, default=SHIPPED_MODEL_DIR,
                        help=f"model folder (default: the shipped model, {SHIPPED_MODEL_DIR.name})")
    parser.add_argument("--champion", choices=["if-none", "always", "never"], default="if-none",
                        help="move the champion alias to the new version (default: only when there is none)")
    parser.add_argument("--description", default="", help="the model version's description")


def run(args: argparse.Namespace) -> int:
    import mlflow

    from hcmrm.model.checkpoint import load_model
    from hcmrm.model.folder import model_files
    from hcmrm.tracking import registry
    from hcmrm.tracking.runs import adopt_run
    from hcmrm.tracking.store import configure, use_experiment

    settings = settings_from_args(args)
    model_files(args.path)  # regular files only, under the size cap: checked before anything is read
    model = load_model(args.path)  # refuse a folder that is not a loadable model before registering it
    configure(settings)
    experiment_id = use_experiment(settings, EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"register {args.path.name}",
                          tags={"hcmrm.job": COMMAND}) as run:
        adopt_run(mlflow.MlflowClient(), run.info.run_id)  # KILLED, not FAILED, if the command is stopped
        mlflow.log_params({"path": str(args.path.resolve()), "parameters": sum(p.numel() for p in model.parameters())})
        source = registry.log_model_dir(args.path)
        description = args.description or f"registered from {args.path.name}"
        version = registry.register_version(settings, run.info.run_id, source, description=description)
    before = registry.current_champion(settings)
    promote = args.champion == "always" or (args.champion == "if-none" and before is None)
    if promote:
        registry.set_alias(settings, version.version)
    held = "now champion" if promote else f"champion stays v{before.version}" if before else "no champion"
    print(f"registered {settings.model_name} v{version.version} from {args.path} ({held})")
    return 0


if __name__ == "__main__":
    script_main(sys.modules[__name__])
