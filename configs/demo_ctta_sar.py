# The bundled demo with the `sar` method (configs/_base_/methods/segformer.py); see demo_ctta.py.
_base_ = ['./demo_ctta.py']
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.sar}})]
