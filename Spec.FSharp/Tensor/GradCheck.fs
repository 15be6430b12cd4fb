namespace SnnSpec

open System

/// The outcome of comparing analytic gradients with central finite differences.
type GradCheckResult =
    {
        /// Largest |numeric − analytic| over all checked directions.
        MaxAbsError: float
        /// Largest error relative to max(|numeric|, |analytic|, 1).
        MaxRelError: float
        /// Human-readable description of the worst direction.
        Worst: string
        /// True when every direction is within tolerance.
        Passed: bool
    }

/// Finite-difference gradient checks for any differentiable function of tensors.
/// For f: Tensor[] → Tensor the objective is φ(x) = Σ w ⊙ f(x) with a fixed random cotangent w,
/// accumulated in float64; its derivative along a direction v is compared with the central
/// difference [φ(x + εv) − φ(x − εv)] / 2ε. Small inputs are checked along every coordinate,
/// larger ones along random directions.
module GradCheck =
    type Options =
        {
            Epsilon: float32
            RelTol: float
            AbsTol: float
            /// Inputs with at most this many elements are checked coordinate by coordinate.
            CoordinateLimit: int
            /// Random directions per larger input.
            Directions: int
            Seed: int
        }

    let defaults =
        {
            Epsilon = 1e-2f
            RelTol = 2e-2
            AbsTol = 2e-3
            CoordinateLimit = 48
            Directions = 6
            Seed = 12345
        }

    let private dot (a: float32[]) (b: float32[]) =
        let mutable s = 0.0

        for i in 0 .. a.Length - 1 do
            s <- s + float a[i] * float b[i]

        s

    /// Compares analytic and numeric directional derivatives of f at xs.
    let checkWith (opts: Options) (f: Tensor[] -> Tensor) (xs: Tensor[]) : GradCheckResult =
        let rng = Rng.create opts.Seed
        let y0 = Diff.noGrad (fun () -> f xs)
        let w = (Tensor.randn (Rng.fold 1 rng) y0.ShapeRef).ToArray()
        let wT = Tensor.ofArray y0.ShapeRef w

        let phi (inputs: Tensor[]) =
            Diff.noGrad (fun () ->
                let y = f inputs
                dot (y.ToArray()) w)

        let _, grads = Diff.valueAndGradN (fun a -> Tensor.sum (f a * wT)) xs
        let mutable maxAbs = 0.0
        let mutable maxRel = 0.0
        let mutable worst = "none"
        let mutable passed = true

        for i in 0 .. xs.Length - 1 do
            let x = xs[i].ToArray()
            let g = grads[i].ToArray()

            let directions =
                if x.Length <= opts.CoordinateLimit then
                    Array.init x.Length (fun k ->
                        sprintf "input %d, coordinate %d" i k,
                        Array.init x.Length (fun j -> if j = k then 1.0f else 0.0f))
                else
                    Array.init opts.Directions (fun k ->
                        let v = (Tensor.randn (Rng.fold (100 * i + k + 2) rng) [| x.Length |]).ToArray()
                        let norm = sqrt (dot v v)
                        sprintf "input %d, random direction %d" i k, v |> Array.map (fun e -> float32 (float e / norm)))

            for name, v in directions do
                let shifted (sign: float32) =
                    xs
                    |> Array.mapi (fun j t ->
                        if j = i then
                            Tensor.ofArray t.ShapeRef (Array.map2 (fun a b -> a + sign * opts.Epsilon * b) x v)
                        else
                            t)

                let numeric =
                    (phi (shifted 1.0f) - phi (shifted -1.0f)) / (2.0 * float opts.Epsilon)

                let analytic = dot g v
                let err = abs (numeric - analytic)
                let rel = err / (max 1.0 (max (abs numeric) (abs analytic)))

                if err > opts.AbsTol + opts.RelTol * max (abs numeric) (abs analytic) then
                    passed <- false

                if rel > maxRel then
                    maxRel <- rel
                    worst <- sprintf "%s: numeric %g vs analytic %g" name numeric analytic

                maxAbs <- max maxAbs err

        {
            MaxAbsError = maxAbs
            MaxRelError = maxRel
            Worst = worst
            Passed = passed
        }

    /// <c>checkWith defaults</c>.
    let check (f: Tensor[] -> Tensor) (xs: Tensor[]) = checkWith defaults f xs
