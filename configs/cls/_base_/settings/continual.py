# Continual: the 15 ImageNet-C corruptions at severity 5, in the standard order, once.
stream = dict(type='SequentialStream', severities=[5], rounds=1)
