"""Bay's image registry: OCI Distribution over a storage driver (local
filesystem or HDFS through WebHDFS), stateless so it scales out behind HAProxy."""
