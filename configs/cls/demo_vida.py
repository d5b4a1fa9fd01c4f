# The offline demo, method vida, continual setting: python tools/adapt_cls.py configs/cls/demo_vida.py
# Other settings: add --setting configs/cls/_base_/settings/<gradual|recurring|mixed|label_shift|single_sample>.py
_base_ = ['./_base_/models/vit_digits.py', './_base_/digits_c.py', './_base_/settings/continual.py',
          './_base_/methods/vit.py']
method = {{_base_.vida}}
