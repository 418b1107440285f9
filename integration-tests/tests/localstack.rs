//! The S3 scenarios against LocalStack.
shoplake_integration_tests::scenario_tests!(shoplake_integration_tests::Backend::LocalStack);
