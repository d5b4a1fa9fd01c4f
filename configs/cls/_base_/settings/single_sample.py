# Single-sample: the continual sequence one image at a time (the code bank then uses batches of 1).
stream = dict(type='SequentialStream', severities=[5], rounds=1)
data = dict(batch_size=1)
