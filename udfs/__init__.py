"""Thin Spark adapters (pandas UDFs, mapInPandas functions) around the hcmrm library."""
