"""The file MLflow runs to load a logged separator (models-from-code): it names the model class.

MLflow executes this file with the logged `code/` folder (the `unmix` package) first on
sys.path; `SeparatorModel.load_context` then rebuilds the network from the logged config
and safetensors weights.
"""

import mlflow

from unmix.tracking.logged_model import SeparatorModel

mlflow.models.set_model(SeparatorModel())
