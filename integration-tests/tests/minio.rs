//! The S3 scenarios against MinIO.
shoplake_integration_tests::scenario_tests!(shoplake_integration_tests::Backend::Minio);
