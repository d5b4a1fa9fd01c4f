# CIFAR10-to-CIFAR10C, continual (the 15 corruptions at severity 5, batch 200, a fixed shuffle), method cotta:
#   python tools/adapt_cls.py configs/cls/cifar10c_cotta.py
# Other settings: add --setting configs/cls/_base_/settings/<gradual|recurring|mixed|label_shift|class_sorted|
# single_sample>.py; the tuning stream: --setting configs/cls/_base_/settings/cifar10c_tune.py
_base_ = ['./_base_/models/convmixer_256_8_cifar10.py', './_base_/cifar10c.py', './_base_/settings/continual.py',
          './_base_/methods/convmixer.py']
method = {{_base_.cotta}}
