"""Non-neural language-model baselines."""
