namespace SnnSpec.Kernels

open System
open System.Threading.Tasks

/// How many threads kernels may use. Defaults to the processor count; set it to 1 for
/// single-threaded measurements.
type Threads private () =
    static let mutable count = Environment.ProcessorCount

    static member Count
        with get () = count
        and set v = count <- max 1 v

/// Splits [0, n) into contiguous chunks run on the kernel threads; runs inline when the work is small.
module Par =
    /// Runs body(start, stop) over chunks of [0, n). <c>grain</c> is the least work per chunk worth a thread.
    let inline forChunks (n: int) (grain: int) ([<InlineIfLambda>] body: int -> int -> unit) =
        let threads = Threads.Count

        if n <= 0 then
            ()
        elif threads <= 1 || n < 2 * grain then
            body 0 n
        else
            let chunks = min threads ((n + grain - 1) / grain)
            let per = (n + chunks - 1) / chunks

            Parallel.For(
                0,
                chunks,
                ParallelOptions(MaxDegreeOfParallelism = threads),
                fun c ->
                    let s = c * per
                    let e = min n (s + per)

                    if s < e then
                        body s e
            )
            |> ignore

    /// Runs body(i) for i in [0, n) on the kernel threads, each call a substantial unit of work.
    let inline forEach (n: int) ([<InlineIfLambda>] body: int -> unit) =
        let threads = Threads.Count

        if n = 1 || threads <= 1 then
            for i in 0 .. n - 1 do
                body i
        else
            Parallel.For(0, n, ParallelOptions(MaxDegreeOfParallelism = threads), (fun i -> body i))
            |> ignore
