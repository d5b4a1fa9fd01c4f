# Gradual: each corruption through severities 1 -> 5 -> 1 (CoTTA); a severity met twice is one segment.
stream = dict(type='SequentialStream', severities=[1, 2, 3, 4, 5, 4, 3, 2, 1], rounds=1)
