//! The S3 scenarios against LocalStack and against MinIO, as one test
//! binary (each links all of deltalake and DataFusion; one link instead of
//! two), and the racing writers of one date on a local table beside them
//! (the same races, compared across backends). Run one backend with a
//! filter: `cargo test --test s3 minio::`.

mod local {
    shoplake_integration_tests::race_tests!(None);
    shoplake_integration_tests::kill_tests!(None);
}

mod localstack {
    shoplake_integration_tests::scenario_tests!(shoplake_integration_tests::Backend::LocalStack);
}

mod minio {
    shoplake_integration_tests::scenario_tests!(shoplake_integration_tests::Backend::Minio);
}
