# CIFAR-10-C (severities 1-5 of 10,000 images each, RobustBench's array layout), written by
#   python tools/make_cifar10c.py            (from the CIFAR-10 test images of ../shared/data/cifar10)
# or a downloaded CIFAR-10-C (Hendrycks & Dietterich 2019) put in the same folder. Batch 200 as in CoTTA,
# RMT and ViDA's CIFAR10-to-CIFAR10C runs.
cifar10_classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
data = dict(source=dict(type='CorruptionArrays', root='data/cifar10c', classes=cifar10_classes), batch_size=200,
            num_workers=0)
seed = 0
