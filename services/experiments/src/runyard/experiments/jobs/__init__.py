"""Dataset generation and import jobs: durable rows run step by step by the ``dataset-jobs``
worker under a lease (``runner``), with the signal model they generate from and the files they
read and write."""
