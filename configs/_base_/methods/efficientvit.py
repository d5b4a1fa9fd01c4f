# Adaptation methods for EfficientViT-Seg (imse_seg EfficientViTBackbone + EfficientViTSegHead), the
# published Cityscapes B0 among them. Each is the config of one AdaptationSetupHook method; a config picks
# one with    custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.<name>}})]
# Spectral roles (methods.md 1.1): the dense 1x1 convs, i.e. linear maps over channels: the attention's qkv
# and proj, and every MBConv's expansion and projection in stages 0-3. Depthwise and grouped convs (the
# attention's multi-scale aggregation, MBConv depthwise) are not dense maps and stay as they are. The head's
# convs are left out: the classifier's input must stay the space STAG's anchors were computed in.
# As IMSE trains the earlier blocks and keeps the last ones for the diversity term, stages 0-2 train and the
# last stage (stages.3: two attention blocks and its stride-2 MBConv) carries the diversity loss. Measured on
# the tuning stream (docs/efficientvit.md): training stages 0-2, 1-2 or 2 alone scores alike (42.7 / 42.6 /
# 42.6), so IMSE's own split is kept.
spectral_roles = ['backbone.stages.*.expand.conv', 'backbone.stages.*.project.conv',
                  'backbone.stages.*.attention.qkv', 'backbone.stages.*.attention.proj.conv']
trained_stages = ['backbone.stages.[012].*']
diversity_stage = ['backbone.stages.3.*']
# Diversity weight: official lambda = 50 per block; the DiversityTerm averages over layers, and a stage-3
# block has 4 spectral layers (qkv, proj, expand, project), so 200 is the official scale.
diversity_weight = 200.0
# BatchNorm moments (issue 16): the loop keeps models in eval mode (source moments); the published TENT
# normalises with the test image's; Schneider et al. 2020 blend them. Measured on the tuning stream (split
# val, one round; docs/efficientvit.md): test moments hurt at batch 1 (no gradient 31.2, source 40.9), a
# blend with weight 0.1 on the test image helps (43.9; 0.05: 43.7, 0.3: 39.9), and it keeps TENT and IMSE
# from the collapse they show with source moments. So every gradient method here normalises with it,
# except SAR, which follows its official test moments.
statistics = dict(type='BlendedStatistics', weight=0.1)
# Learning rates chosen on the same tuning stream (docs/efficientvit.md): TENT 3e-5 (1e-5: 44.1, 1e-4: 43.8;
# with source moments 1e-4 collapses to 35.4), IMSE+STAG 3e-5 (1e-4: 41.6, 3e-4: 38.9, 1e-3: 35.0).
# CoTTA's (all parameters) is TENT's / 10, not tuned (a CoTTA run costs ~1 s per image here).
norm_lr = 3e-5
spectral_lr = 3e-5
# IMSE's code bank on the stem's feature maps (the first features, before any adapted layer; B x C x H x W).
code_bank = dict(feature_module='backbone.stem', channel_dim=1, full_batch_size=1,
                 retrieval=dict(type='TopOneRetrieval'), refresh_entries=True)

source = dict(type='Source')
tent = dict(
    type='EntropyAdaptation',
    parameters=dict(type='NormParameters', statistics=statistics),
    objective=dict(entropy=dict(type='EntropyTerm')),
    optimizer=dict(type='Adam', lr=norm_lr, betas=(0.9, 0.999)))
tent_stag = dict(
    type='EntropyAdaptation',
    parameters=dict(type='NormParameters', statistics=statistics),
    objective=dict(entropy=dict(type='EntropyTerm'), stag=dict(type='StagTerm', weight=1.0)),
    optimizer=dict(type='Adam', lr=norm_lr, betas=(0.9, 0.999)))
imse = dict(
    type='EntropyAdaptation',
    parameters=dict(type='SpectralParameters', convert=spectral_roles, train=trained_stages,
                    statistics=statistics),
    objective=dict(entropy=dict(type='EntropyTerm', margin=0.4),
                   diversity=dict(type='DiversityTerm', weight=diversity_weight, layers=diversity_stage,
                                  ratio=1.0)),
    optimizer=dict(type='Adam', lr=spectral_lr),
    sam_rho=0.05,
    code_bank=code_bank)
imse_stag = dict(
    type='EntropyAdaptation',
    parameters=dict(type='SpectralParameters', convert=spectral_roles, train=trained_stages,
                    statistics=statistics),
    objective=dict(entropy=dict(type='EntropyTerm', margin=0.4),
                   diversity=dict(type='DiversityTerm', weight=diversity_weight, layers=diversity_stage,
                                  ratio=1.0),
                   stag=dict(type='StagTerm', weight=1.0)),
    optimizer=dict(type='Adam', lr=spectral_lr),
    sam_rho=0.05,
    code_bank=code_bank)
# CoTTA as its segmentation code runs it: 14 teacher views, anchor confidence 0.69, EMA 0.999, restore 0.01.
cotta = dict(type='CoTTA', optimizer=dict(type='Adam', lr=norm_lr / 10, betas=(0.9, 0.999)),
             statistics=statistics)
# BN statistics adaptation, no gradient (the first row of CTTA tables): every BatchNorm layer normalises
# with the test image's moments (`bn_stats`) or with Schneider et al. 2020's blend of source and test
# moments (`bn_stats_blend`, weight on the test image chosen on the tuning stream, docs/efficientvit.md).
bn_stats = dict(type='NormStatisticsAdaptation', statistics=dict(type='TestStatistics'))
bn_stats_blend = dict(type='NormStatisticsAdaptation', statistics=statistics)
# SAR (mr-eggplant/SAR sar.py): norm affines, reliable entropy e0 = 0.4 ln K, SAM rho 0.05 around SGD
# momentum 0.9, recovery when the loss average falls below 0.2; the top of the network (the last stage and
# the head) left out as the official code leaves out ViT-B's last blocks; BatchNorm with test moments as in
# sar.configure_model; lr by the official rule 0.001 / 64 x batch size.
sar = dict(
    type='SAR',
    parameters=dict(type='NormParameters', exclude=['backbone.stages.3.*', 'decode_head.*'],
                    statistics=dict(type='TestStatistics')),
    optimizer=dict(type='SGD', lr=0.001 / 64, momentum=0.9),
    margin=0.4, sam_rho=0.05, reset_constant=0.2)
# ViDA (Yangsenqiao/vida imagenet/vida.py; no public segmentation code): adapters of ranks 1 and 128 beside
# the dense 1x1 convs of the attention stages (qkv, proj, MBConv expansion and projection), every parameter
# trains, adapters at a tenth of the model's rate (cifar/cfgs/cifar10/vida.yaml's ratio), teacher EMA 0.999,
# adapter EMA 0.8, 10 views, uncertainty threshold 0.2 (imagenet/cfgs/vit/vida.yaml, conf.py).
vida = dict(
    type='ViDA',
    targets=['backbone.stages.[23].*.expand.conv', 'backbone.stages.[23].*.project.conv',
             'backbone.stages.[23].*.attention.qkv', 'backbone.stages.[23].*.attention.proj.conv'],
    low_rank=1, high_rank=128,
    optimizer=dict(type='Adam', lr=norm_lr / 10, betas=(0.9, 0.999)), adapter_lr=norm_lr / 100,
    views=dict(type='RandomViews', num_views=10),
    uncertainty_threshold=0.2, teacher_momentum=0.999, adapter_momentum=0.8, statistics=statistics)
# Ablations of the flagship (docs/results.md, `tools/run_demo.py --ablations`): one component off or
# changed at a time, everything else as `imse_stag`.
imse_stag_no_diversity = dict(imse_stag, objective=dict(entropy=imse_stag['objective']['entropy'],
                                                        stag=imse_stag['objective']['stag']))
imse_stag_no_retrieval = dict(imse_stag, code_bank=None)
imse_stag_no_sam = dict(imse_stag, sam_rho=None)
# SAM's ascent on every fourth image only (issue 21's cost lever; EntropyAdaptation's sam_interval).
imse_stag_sam_every_4 = dict(imse_stag, sam_interval=4)
# One forward-backward per image: SAM's ascent along the previous image's gradient (issue 21's cost lever;
# EntropyAdaptation's sam_reuse_ascent).
imse_stag_sam_reuse = dict(imse_stag, sam_reuse_ascent=True)
# The same ascent on every other image, along the plain step's gradient of the image before (issue 21).
imse_stag_sam_reuse_every_2 = dict(imse_stag, sam_reuse_ascent=True, sam_interval=2)
# STAG's readings (methods.md 2; imse_seg/core/stag.py): (B) the gradient w.r.t. the classifier weights,
# (C) w.r.t. the predicted class's row; (A), the feature gradient, is the default.
imse_stag_weight_alignment = dict(
    imse_stag, objective=dict(imse_stag['objective'],
                              stag=dict(type='StagTerm', weight=1.0, alignment='StagWeightAlignment')))
imse_stag_row_alignment = dict(
    imse_stag, objective=dict(imse_stag['objective'],
                              stag=dict(type='StagTerm', weight=1.0, alignment='StagRowAlignment')))
