"""AWS edges of the pipeline: S3 storage, the DynamoDB job store, the Lambda logic."""
