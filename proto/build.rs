//! Compiles the .proto files with `protox` (pure Rust: no system `protoc`) and
//! generates the tonic client and server code, plus the encoded descriptor set that
//! gRPC server reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "callcenter/agent/v1/agent.proto",
    "callcenter/supervisor/v1/supervisor.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("callcenter_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
