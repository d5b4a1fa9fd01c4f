# Recurring: the continual sequence repeated; nothing is reset between rounds.
stream = dict(type='SequentialStream', severities=[5], rounds=3)
