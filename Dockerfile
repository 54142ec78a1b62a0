# binauthz: one static-ish binary on a small Debian runtime.
# Build: docker build -t binauthz:0.1.0 .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends nettle-dev libclang-dev clang pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin binauthz

FROM debian:bookworm-slim
# sequoia's nettle backend links libnettle, libhogweed and libgmp at run time.
RUN apt-get update && apt-get install -y --no-install-recommends libnettle8 libhogweed6 libgmp10 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/binauthz /usr/local/bin/binauthz
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/binauthz"]
CMD ["run"]
