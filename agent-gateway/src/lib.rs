//! gRPC services for remote agents and supervisors (issue 6).
