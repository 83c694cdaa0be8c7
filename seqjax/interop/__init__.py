"""Weights to and from other libraries' recurrent layers (``pytorch``: ``nn.RNN``, ``nn.LSTM``, ``nn.GRU``)."""
