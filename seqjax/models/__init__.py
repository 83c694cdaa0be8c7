"""Models built from seqjax cells: the recurrent language model (lm), its training, evaluation and sampling."""
