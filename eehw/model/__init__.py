"""The quantised multi-exit network: data, Brevitas model, training, export to the integer golden model."""
