//! Generated gRPC types for `callcenter.agent.v1` and `callcenter.supervisor.v1` (issue 6).
