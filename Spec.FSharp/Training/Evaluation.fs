namespace SnnSpec.Training

open System
open SnnSpec
open SnnSpec.Data

/// Fixed histogram bins: Bins equal bins over [Min, Max).
type HistogramSpec =
    {
        Min: float32
        Max: float32
        Bins: int
    }

    /// 60 bins over [−3, 3): membranes around a threshold of 1 (MD-SNN's membrane figure [R]).
    static member Default = { Min = -3.0f; Max = 3.0f; Bins = 60 }

/// Counts per bin; values below Min or at/above Max (and NaN) are counted apart.
type Histogram =
    {
        /// Bins + 1 edges, Edges[i] ≤ bin i < Edges[i + 1].
        Edges: float32[]
        Counts: int64[]
        Below: int64
        Above: int64
    }

/// What one evaluation pass records besides accuracy.
type EvaluationConfig =
    {
        /// Populations whose membrane histograms are collected (on the student and, when given, on
        /// the teacher under the same names).
        Membranes: string list
        Histogram: HistogramSpec
        FiringRates: bool
    }

    static member Default =
        {
            Membranes = []
            Histogram = HistogramSpec.Default
            FiringRates = true
        }

type EvaluationReport =
    {
        Samples: int
        /// Accuracy at every deployment length t = 1…T (index t − 1) by the cumulative time-mean
        /// readout of one T-step run (methods.md §3a: equals running t steps for a causal model
        /// with BN in eval mode).
        AccuracyPerStep: float[]
        /// Accuracy at the full T.
        Accuracy: float
        /// Mean spikes per neuron per step of every population, over the whole pass.
        FiringRates: Map<string, float>
        StudentHistograms: Map<string, Histogram>
        TeacherHistograms: Map<string, Histogram>
        /// The teacher's accuracy at its own T, when a teacher was evaluated.
        TeacherAccuracy: float option
    }

module Histogram =
    let empty (spec: HistogramSpec) =
        if spec.Bins < 1 || not (spec.Max > spec.Min) then
            Errors.invalidArg "Histogram" "spec" spec "Bins >= 1 and Max > Min"

        {
            Edges =
                Array.init (spec.Bins + 1) (fun i -> spec.Min + (spec.Max - spec.Min) * float32 i / float32 spec.Bins)
            Counts = Array.zeroCreate spec.Bins
            Below = 0L
            Above = 0L
        }

    /// Adds values in place (the counts array is mutated); returns the updated record.
    let add (values: float32[]) (h: Histogram) =
        let bins = h.Counts.Length
        let lo, hi = h.Edges[0], h.Edges[bins]
        let scale = float32 bins / (hi - lo)
        let mutable below = h.Below
        let mutable above = h.Above

        for v in values do
            if v < lo then
                below <- below + 1L
            elif v >= hi || Single.IsNaN v then
                above <- above + 1L
            else
                let b = min (bins - 1) (int ((v - lo) * scale))
                h.Counts[b] <- h.Counts[b] + 1L

        { h with Below = below; Above = above }

    /// All values counted.
    let total (h: Histogram) = Array.sum h.Counts + h.Below + h.Above

/// Full-range evaluation: one pass over a test batcher gives accuracy at every t = 1…T, firing
/// rates per layer, and membrane histograms of teacher and student per probe.
module Evaluation =
    let private steps (m: Model) =
        match m.Mode with
        | ExecutionMode.Snn t -> t
        | ExecutionMode.Ann -> 1

    /// Evaluates the student (eval mode, no gradient) over one epoch of the batcher; the teacher,
    /// if given, runs on the same batches for its histograms and accuracy.
    let run (cfg: EvaluationConfig) (teacher: Model option) (student: Model) (batcher: Batcher) =
        let names = Set.ofList cfg.Membranes

        let sProbes =
            { ProbeRequest.None with
                Membranes = names
                FiringRates = cfg.FiringRates
            }

        let tProbes =
            { ProbeRequest.None with
                Membranes = names
            }

        let tSteps = steps student
        let correct = Array.zeroCreate<int64> tSteps
        let mutable teacherCorrect = 0L
        let mutable samples = 0
        let rateSums = Collections.Generic.Dictionary<string, float>()

        let mutable sHist =
            cfg.Membranes
            |> List.map (fun n -> n, Histogram.empty cfg.Histogram)
            |> Map.ofList

        let mutable tHist = sHist |> Map.map (fun _ _ -> Histogram.empty cfg.Histogram)

        for batch in batcher.Epoch 0 do
            Diff.noGrad (fun () ->
                use _ = TensorScope.Begin()
                let b = batch.Labels.Length

                let out =
                    Model.forward
                        { ForwardContext.Eval with
                            Probes = sProbes
                        }
                        student
                        batch.Inputs

                let c = Readout.correctPerStep out.Logits batch.Labels

                for t in 0 .. tSteps - 1 do
                    correct[t] <- correct[t] + int64 c[t]

                for KeyValue(n, r) in out.FiringRates do
                    rateSums[n] <-
                        (match rateSums.TryGetValue n with
                         | true, v -> v
                         | _ -> 0.0)
                        + float r * float b

                for KeyValue(n, h) in out.Membranes do
                    sHist <- sHist.Add(n, Histogram.add (h.ToArray()) sHist[n])

                match teacher with
                | Some tm ->
                    let tout =
                        Model.forward
                            { ForwardContext.Eval with
                                Probes = tProbes
                            }
                            tm
                            batch.Inputs

                    let tc = Readout.correctPerStep tout.Logits batch.Labels
                    teacherCorrect <- teacherCorrect + int64 tc[tc.Length - 1]

                    for KeyValue(n, h) in tout.Membranes do
                        tHist <- tHist.Add(n, Histogram.add (h.ToArray()) tHist[n])
                | None -> ()

                samples <- samples + b)

        let acc (c: int64) =
            if samples = 0 then 0.0 else float c / float samples

        let perStep = correct |> Array.map acc

        {
            Samples = samples
            AccuracyPerStep = perStep
            Accuracy =
                (if perStep.Length = 0 then
                     0.0
                 else
                     perStep[perStep.Length - 1])
            FiringRates =
                rateSums
                |> Seq.map (fun kv -> kv.Key, (if samples = 0 then 0.0 else kv.Value / float samples))
                |> Map.ofSeq
            StudentHistograms = sHist
            TeacherHistograms = (if teacher.IsSome then tHist else Map.empty)
            TeacherAccuracy = teacher |> Option.map (fun _ -> acc teacherCorrect)
        }

    /// Accuracy at every t = 1…T of a model over one pass of the batcher (no probes).
    let accuracyPerStep (model: Model) (batcher: Batcher) =
        (run
            { EvaluationConfig.Default with
                FiringRates = false
            }
            None
            model
            batcher)
            .AccuracyPerStep
