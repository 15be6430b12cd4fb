namespace SnnSpec

/// Reading a prediction out of per-step logits [T, B, K].
module Readout =
    let private checkLogits (op: string) (logits: Tensor) =
        if logits.Rank <> 3 then
            Errors.shapeMismatch op [ logits.Shape ] "expected per-step logits [T, B, K]"

    /// The ensemble z̄ = (1/T) Σ_t z_t: [T, B, K] → [B, K].
    let mean (logits: Tensor) =
        checkLogits "Readout.mean" logits
        Tensor.meanDims [| 0 |] false logits

    /// Cumulative time-means: row t is (1/(t+1)) Σ_{s≤t} z_s, the readout of a (t+1)-step deployment
    /// of a causal model taken from one T-step run.
    let cumulativeMean (logits: Tensor) =
        checkLogits "Readout.cumulativeMean" logits
        let steps = logits.Shape[0]

        let rows =
            [
                for t in 1..steps -> Tensor.meanDims [| 0 |] false (Tensor.narrow 0 0 t logits)
            ]

        Tensor.stack 0 rows

    /// Predicted classes (argmax of the time-mean) for each sample.
    let predict (logits: Tensor) =
        (Tensor.argmax 1 (mean logits)).ToArray() |> Array.map int

    /// Number of correct predictions at every deployment length t = 1…T from one T-step run
    /// (cumulative time-mean readout).
    let correctPerStep (logits: Tensor) (labels: int[]) =
        checkLogits "Readout.correctPerStep" logits

        if logits.Shape[1] <> labels.Length then
            Errors.shapeMismatch "Readout.correctPerStep" [ logits.Shape; [| labels.Length |] ] "one label per sample"

        let cum = Diff.noGrad (fun () -> cumulativeMean logits)
        let pred = (Tensor.argmax 2 cum).ToArray()
        let b = labels.Length

        Array.init logits.Shape[0] (fun t ->
            let mutable c = 0

            for i in 0 .. b - 1 do
                if int pred[t * b + i] = labels[i] then
                    c <- c + 1

            c)
