namespace SnnSpec.Data

open System
open System.Threading
open SnnSpec

/// How a <c>Batcher</c> forms batches.
type BatchOptions =
    {
        BatchSize: int
        /// Visit samples in a fresh random order each epoch (a permutation drawn from Key folded with the epoch).
        Shuffle: bool
        /// Leave out the last batch when it would be smaller than BatchSize.
        DropLast: bool
        /// Batches prepared ahead on a background thread; 0 prepares each batch on the caller's thread.
        Prefetch: int
        /// Applied to each sample after it is copied (augmentation).
        Transform: SampleTransform option
        /// Samples are sequences [T, …] (e.g. event frames): batches are laid out time-major,
        /// Inputs [T, B, …], the sequence layout Forward.run takes.
        TimeMajor: bool
        Key: Rng
    }

/// One batch: <c>Inputs</c> [B, ...SampleShape] float32 (time-major [T, B, …] for sequence samples
/// with BatchOptions.TimeMajor) and <c>Labels</c> [B]. Both live in buffers the batcher reuses: they
/// stay valid until the next batch is requested; copy them to keep them longer.
type Batch =
    {
        Inputs: Tensor
        Labels: int[]
        /// Position of the batch within its epoch.
        Index: int
    }

/// Turns a sample source into epochs of batches. Memory is allocated once per batcher (Prefetch + 1
/// batch buffers); filling a batch allocates nothing per sample. With Prefetch > 0 a background
/// thread fills up to Prefetch batches ahead while the caller trains on the current one.
[<Sealed>]
type Batcher(source: ISampleSource, options: BatchOptions) =
    let n = source.Count
    let bs = options.BatchSize

    do
        if bs <= 0 then
            Errors.invalidArg "Batcher" "BatchSize" bs "a positive batch size"

        if options.Prefetch < 0 then
            Errors.invalidArg "Batcher" "Prefetch" options.Prefetch "0 or more"

    let sampleShape = Array.copy source.SampleShape
    let sampleSize = Shape.numel sampleShape

    do
        if options.TimeMajor && sampleShape.Length < 2 then
            Errors.invalidArg
                "Batcher"
                "TimeMajor"
                (Errors.showShape sampleShape)
                "sequence samples [T, …] (at least two axes)"

    // Time-major batches [T, b, …] of sequence samples [T, …]: steps, and floats per step.
    let steps = if options.TimeMajor then sampleShape[0] else 1
    let stepSize = sampleSize / max 1 steps

    let batchShape (b: int) =
        if options.TimeMajor then
            Array.concat [ [| steps; b |]; sampleShape[1..] ]
        else
            Array.append [| b |] sampleShape

    let slots = options.Prefetch + 1

    let buffers =
        Array.init slots (fun _ -> Storage(Array.zeroCreate<float32>(bs * sampleSize)))

    let labels = Array.init slots (fun _ -> Array.zeroCreate<int> bs)

    let fullTensors = buffers |> Array.map (fun s -> Tensor(s, 0, batchShape bs, null))

    // One sample before it is scattered into a time-major batch, per slot.
    let scratch =
        Array.init slots (fun _ ->
            if options.TimeMajor then
                Array.zeroCreate<float32> sampleSize
            else
                [||])

    let batches = if options.DropLast then n / bs else (n + bs - 1) / bs

    let lastSize = if batches = 0 then 0 else n - (batches - 1) * bs
    // Tensors and label arrays for a short last batch, made once per slot.
    let lastTensors =
        buffers |> Array.map (fun s -> Tensor(s, 0, batchShape lastSize, null))

    let lastLabels = Array.init slots (fun _ -> Array.zeroCreate<int> lastSize)
    let mutable busy = 0

    let order (epoch: int) =
        let ek = Rng.fold epoch options.Key
        let permKey, augKey = Rng.split ek

        let perm =
            if options.Shuffle then
                Rng.permutation n permKey
            else
                Array.init n id

        perm, augKey

    let fill (perm: int[]) (augKey: Rng) (b: int) (slot: int) =
        let start = b * bs
        let count = min bs (n - start)
        let data = buffers[slot].Data
        let lab = if count = bs then labels[slot] else lastLabels[slot]

        for j in 0 .. count - 1 do
            let i = perm[start + j]
            lab[j] <- source.Label i

            if options.TimeMajor then
                let one = scratch[slot]
                source.CopySample(i, one, 0)

                match options.Transform with
                | Some t -> t (Rng.fold i augKey) one 0
                | None -> ()

                for t in 0 .. steps - 1 do
                    Array.Copy(one, t * stepSize, data, (t * count + j) * stepSize, stepSize)
            else
                source.CopySample(i, data, j * sampleSize)

                match options.Transform with
                | Some t -> t (Rng.fold i augKey) data (j * sampleSize)
                | None -> ()

        {
            Inputs = (if count = bs then fullTensors[slot] else lastTensors[slot])
            Labels = lab
            Index = b
        }

    /// Batches per epoch.
    member _.BatchesPerEpoch = batches
    /// The source the batches are drawn from.
    member _.Source = source
    /// The options the batcher was made with.
    member _.Options = options

    /// The sample indices of one epoch in batch order: batch b holds entries b·BatchSize onwards.
    member _.SampleOrder(epoch: int) : int[] = fst (order epoch)
    /// The shape of Inputs for a full batch.
    member _.BatchShape = batchShape bs

    /// The batches of one epoch, in order. One epoch may be enumerated at a time per batcher.
    member _.Epoch(epoch: int) : seq<Batch> =
        { new Collections.Generic.IEnumerable<Batch> with
            member _.GetEnumerator() : Collections.Generic.IEnumerator<Batch> =
                if Interlocked.CompareExchange(&busy, 1, 0) <> 0 then
                    Errors.fail
                        "Batcher.Epoch: another epoch of this batcher is still being enumerated; finish or dispose it first, or make a second Batcher."

                let perm, augKey = order epoch
                let mutable current = Unchecked.defaultof<Batch>
                let mutable next = 0

                if options.Prefetch = 0 then
                    { new Collections.Generic.IEnumerator<Batch> with
                        member _.Current = current
                      interface Collections.IEnumerator with
                          member _.Current = box current

                          member _.MoveNext() =
                              if next >= batches then
                                  false
                              else
                                  current <- fill perm augKey next 0
                                  next <- next + 1
                                  true

                          member _.Reset() = raise (NotSupportedException())
                      interface IDisposable with
                          member _.Dispose() = Volatile.Write(&busy, 0)
                    }
                else
                    let free = new SemaphoreSlim(slots)
                    let filled = new SemaphoreSlim(0)
                    let cts = new CancellationTokenSource()
                    let ready: Batch[] = Array.zeroCreate slots
                    let mutable error: exn = null
                    let mutable holding = false

                    let producer =
                        Thread(
                            (fun () ->
                                try
                                    try
                                        for b in 0 .. batches - 1 do
                                            free.Wait cts.Token
                                            let slot = b % slots
                                            ready[slot] <- fill perm augKey b slot
                                            filled.Release() |> ignore
                                    with
                                    | :? OperationCanceledException -> ()
                                    | e -> Volatile.Write(&error, e)
                                finally
                                    filled.Release() |> ignore),
                            IsBackground = true,
                            Name = "snnspec-batch-prefetch"
                        )

                    producer.Start()
                    let mutable disposed = false

                    { new Collections.Generic.IEnumerator<Batch> with
                        member _.Current = current
                      interface Collections.IEnumerator with
                          member _.Current = box current

                          member _.MoveNext() =
                              if holding then
                                  holding <- false
                                  free.Release() |> ignore

                              if next >= batches then
                                  false
                              else
                                  filled.Wait()
                                  let e = Volatile.Read(&error)

                                  if not (isNull e) then
                                      raise (SnnSpecException("Batcher: preparing a batch failed: " + e.Message, e))

                                  current <- ready[next % slots]
                                  next <- next + 1
                                  holding <- true
                                  true

                          member _.Reset() = raise (NotSupportedException())
                      interface IDisposable with
                          member _.Dispose() =
                              if not disposed then
                                  disposed <- true
                                  cts.Cancel()
                                  producer.Join()
                                  free.Dispose()
                                  filled.Dispose()
                                  cts.Dispose()
                                  Volatile.Write(&busy, 0)
                    }
          interface Collections.IEnumerable with
              member this.GetEnumerator() =
                  (this :?> Collections.Generic.IEnumerable<Batch>).GetEnumerator() :> Collections.IEnumerator
        }

module Batching =
    /// Batches of 64 (or the size given), shuffled, full last batch kept, two batches prefetched.
    let options (batchSize: int) (seed: int) =
        {
            BatchSize = batchSize
            Shuffle = true
            DropLast = false
            Prefetch = 2
            Transform = None
            TimeMajor = false
            Key = Rng.create seed
        }

    /// A batcher over a source.
    let create (options: BatchOptions) (source: ISampleSource) = new Batcher(source, options)
