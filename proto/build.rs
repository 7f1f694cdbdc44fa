//! Compiles the `.proto` files with protox (pure Rust), so no protoc is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "flowtap/v1/flow.proto",
        "flowtap/v1/script.proto",
        "flowtap/v1/store.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Bodies and header values are shared, not copied, on their way through the proxy.
        .bytes(".")
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
