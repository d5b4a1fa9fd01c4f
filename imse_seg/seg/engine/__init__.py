from .adaptation_setup_hook import AdaptationSetupHook
from .continual_loop import ContinualTestLoop

__all__ = ['AdaptationSetupHook', 'ContinualTestLoop']
