# Label shift: the continual sequence with classes ordered by a Dirichlet draw in each corruption (NOTE/RoTTA):
# long runs of few classes instead of i.i.d. labels.
stream = dict(type='SequentialStream', severities=[5], rounds=1,
              order=dict(type='DirichletOrder', concentration=0.1, slots=10))
