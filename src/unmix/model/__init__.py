"""The separator itself: its networks and the config that rebuilds them (networks), the
mixing rules it undoes (mixing), the tensors it takes (tensors), where and in which
precision it runs (devices), and its model file, models/<set>.pt (model_file)."""
