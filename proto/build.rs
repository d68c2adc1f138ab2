//! Generates the gRPC code from `lexum/v1/*.proto` with a vendored protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let files = ["lexum/v1/types.proto", "lexum/v1/client.proto", "lexum/v1/worker.proto", "lexum/v1/raft.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    tonic_prost_build::configure().compile_protos(&files, &["."])?;
    Ok(())
}
