from .adaptation_setup_hook import AdaptationSetupHook
from .continual_loop import ContinualTestLoop
from .stream_log_processor import StreamLogProcessor

__all__ = ['AdaptationSetupHook', 'ContinualTestLoop', 'StreamLogProcessor']
