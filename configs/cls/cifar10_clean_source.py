# The source model on the clean CIFAR-10 test images (the JPEG copies of ../shared/data/cifar10; 86.85 %):
#   python tools/adapt_cls.py configs/cls/cifar10_clean_source.py
_base_ = ['./_base_/models/convmixer_256_8_cifar10.py']
data = dict(source=dict(type='CleanFolder', root='shared:data/cifar10/test',
                        classes=['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                                 'truck']),
            batch_size=200, num_workers=0)
stream = dict(type='SequentialStream', corruptions=['clean'], severities=[0])
method = dict(type='Source')
seed = 0
