"""seqjax beside other libraries. ``pytorch``: weights to and from ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` (without
importing torch). ``flax_nnx``: any seqjax cell as a layer of a Flax NNX model. Nothing is imported here."""
