//! `uniformer`: the command-line tool. Errors become one line on stderr and a non-zero exit.

import ArgumentParser
import TensorCore
import Foundation

@main
struct UniFormerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uniformer",
        abstract: "Run UniFormer dense-prediction models on the CPU.",
        subcommands: [Segment.self, Detect.self, Features.self, Classify.self, Convert.self, Info.self, Bench.self])

    /// The tool runs every model from its main thread, so all of its memory can come from the heap
    /// and be reused pass after pass (TensorCore.allocateAllFromHeap).
    static func main() {
        allocateAllFromHeap()
        main(nil)
    }
}

/// Runs a command body, turning thrown errors into `uniformer: <message>` and exit status 1.
func reporting(_ body: () throws -> Void) throws {
    do { try body() } catch let e as ExitCode { throw e } catch let e as CleanExit { throw e } catch {
        FileHandle.standardError.write(Data("uniformer: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

struct ModelOptions: ParsableArguments {
    @Option(help: "A config file, or the name of one in configs/.")
    var model: String

    @Option(help: "Checkpoint (.pth or .safetensors). Default: the weights the config names (bundled demo models).")
    var weights: String?

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    @Option(help: "Matrix products in fp32, or bf16 with fp32 accumulation (AMX / AVX512-BF16; fp32 where the CPU has neither).")
    var precision: Precision = .fp32
}

extension Precision: ExpressibleByArgument {}

/// Says on stderr when bf16 was asked for and the CPU runs fp32 instead.
func warnIfFallback(requested: Precision, _ ctx: ComputeContext) {
    if requested != ctx.precision {
        progress("uniformer: warning: this CPU has no AMX-BF16 or AVX512-BF16; running fp32")
    }
}
