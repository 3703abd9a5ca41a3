// swift-tools-version:6.0
// UniFormer dense prediction on the CPU: tensor core on OpenBLAS, weight loading from official
// checkpoints, the UniFormer backbone, imaging, and the `uniformer` command-line tool.
import PackageDescription

let optimise: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "UniFormer",
    products: [
        .library(name: "UniFormer", targets: ["UniFormer"]),
        .executable(name: "uniformer", targets: ["UniFormerCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C libraries from Debian (libopenblas-dev, libpng-dev, libjson-c-dev, libjpeg-dev).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJSONC", path: "Sources/CJSONC", pkgConfig: "json-c",
                       providers: [.apt(["libjson-c-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg-dev"])]),

        // Element-wise kernels that must vectorise (exp, erf), in C with per-ISA clones.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=fast"])]),
        // Float32 tensors and the operators UniFormer needs; every matrix product is cblas_sgemm.
        .target(name: "TensorCore", dependencies: ["CBLAS", "CKernels"], swiftSettings: optimise),
        // Official .pth (restricted unpickler) and safetensors; strict, scoped weight access.
        .target(name: "Weights", dependencies: ["TensorCore"], swiftSettings: optimise),
        // PNG/JPEG decoding as OpenCV's imread, OpenCV-exact resize, normalisation.
        .target(name: "CImagingShim", dependencies: ["CPNG", "CJPEG"]),  // setjmp boundary around libpng/libjpeg
        .target(name: "Imaging", dependencies: ["TensorCore", "CPNG", "CJPEG", "CImagingShim"], swiftSettings: optimise),
        // configs/*.json through json-c: the upstream model dicts.
        .target(name: "ModelConfig", dependencies: ["CJSONC"], swiftSettings: optimise),
        // The UniFormer backbone (every upstream variant) and the ImageNet classifier.
        .target(name: "Backbone", dependencies: ["TensorCore", "Weights", "ModelConfig"],
                swiftSettings: optimise),
        // mmcv ConvModule and the FPN neck, shared by segmentation and detection.
        .target(name: "Necks", dependencies: ["TensorCore", "Weights", "ModelConfig"], swiftSettings: optimise),
        // UPerNet and Semantic FPN heads, mmseg's EncoderDecoder (whole and slide inference).
        .target(name: "Segmentation", dependencies: ["TensorCore", "Weights", "ModelConfig", "Backbone", "Necks"],
                swiftSettings: optimise),
        // Anchor heads, RoI heads and their geometry (anchors, box coder, NMS, RoIAlign, RLE), mmdet 2.11.
        .target(name: "Detection", dependencies: ["TensorCore", "Weights", "ModelConfig", "Backbone", "Necks"],
                swiftSettings: optimise),
        // The public API: load a model by config + weights, extract features, classify, segment.
        // Resources/: the bundled demo models' weights (configs/demo-shapes-*.json name them).
        .target(name: "UniFormer", dependencies: ["TensorCore", "Weights", "Imaging", "ModelConfig", "Backbone", "Segmentation", "Detection"],
                resources: [.copy("Resources")], swiftSettings: optimise),
        .executableTarget(name: "UniFormerCLI", dependencies: [
            "UniFormer", "TensorCore", "Weights", "Imaging", "ModelConfig", "Backbone", "Segmentation", "Detection",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: optimise),
        .testTarget(name: "UniFormerTests",
                    dependencies: ["UniFormer", "TensorCore", "Weights", "Imaging", "ModelConfig", "Backbone", "Necks", "Segmentation", "Detection"],
                    exclude: ["Fixtures"]),
    ]
)
