# The tuning stream of the CIFAR-10-C benchmark: the 4 extra CIFAR-10-C corruptions (not among the 15 that
# are reported; `python tools/make_cifar10c.py --extra` writes them), severity 5, continual, 2,000 images each
# (evenly spaced). Hyper-parameters of configs/cls/_base_/methods/convmixer.py were chosen on it
# (docs/results_classification.md).
stream = dict(type='SequentialStream', corruptions=['speckle_noise', 'gaussian_blur', 'spatter', 'saturate'],
              severities=[5], rounds=1)
data = dict(source=dict(type='CorruptionArrays', root='data/cifar10c', images_per_severity=2000))
