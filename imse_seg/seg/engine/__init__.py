from .adaptation_setup_hook import AdaptationSetupHook
from .continual_loop import ContinualTestLoop
from .stream_log_processor import StreamLogProcessor
from .stream_visualization_hook import StreamVisualizationHook

__all__ = ['AdaptationSetupHook', 'ContinualTestLoop', 'StreamLogProcessor', 'StreamVisualizationHook']
