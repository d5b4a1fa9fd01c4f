# Runtime shared by every adaptation config: mmseg scope, logging, visualisation.
default_scope = 'mmseg'
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='StreamLogProcessor', by_epoch=False)  # names the segment in progress lines
log_level = 'INFO'
default_hooks = dict(timer=dict(type='IterTimerHook'),
                     logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False))
randomness = dict(seed=0, deterministic=False)
load_from = None
resume = False
