# The bundled demo with the `bn_stats` method (configs/_base_/methods/segformer.py); see demo_ctta.py.
_base_ = ['./demo_ctta.py']
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.bn_stats}})]
