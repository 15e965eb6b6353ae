"""alp's pure core: data, models, training, acquisition and label validation.

No Prefect, MLflow, git/DVC or network in here: tensors and dataframes in and out.
"""

__version__ = "0.1.0"
