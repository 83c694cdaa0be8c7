"""seqjax's cells inside other frameworks' models (each module imports its framework; nothing is imported here)."""
