"""What a training run is made of besides the model: the weights' moving average, and the
validation that decides how long a run trains."""
