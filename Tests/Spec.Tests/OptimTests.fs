module SnnSpec.Tests.OptimTests

open NUnit.Framework
open SnnSpec
open SnnSpec.Tests.TestUtil

let private quadratic (p: Parameters) =
    // f = Σ (w − 3)² + Σ b², minimum at w = 3, b = 0
    Tensor.sum (Tensor.square (p["w"] - 3.0f)) + Tensor.sum (Tensor.square p["b"])

let private start () =
    Parameters.ofList [ "w", randn 1 [| 4 |]; "b", randn 2 [| 2 |] ]

[<Test>]
let ``parameter gradients have the parameters' names and shapes`` () =
    let p = start ()
    let v, g = Parameters.valueAndGrad quadratic p
    Assert.That(g.Names, Eq.To p.Names)
    assertArraysClose "dw" 1e-6 1e-6 (((p["w"] - 3.0f) * 2.0f).ToArray()) (g["w"].ToArray())
    Assert.That(float (v.ToScalar()), Is.GreaterThan 0.0)

[<Test>]
let ``SGD with momentum follows the PyTorch update by hand`` () =
    let p = Parameters.ofList [ "w", Tensor.ofArray [| 1 |] [| 1.0f |] ]
    let g = Parameters.ofList [ "w", Tensor.ofArray [| 1 |] [| 0.5f |] ]

    let cfg =
        { SgdConfig.Default with
            LearningRate = 0.1f
            Momentum = 0.9f
        }

    let p1, s1 = Optim.sgd cfg OptimizerState.Empty p g
    let p2, _ = Optim.sgd cfg s1 p1 g
    // v1 = 0.5, w1 = 0.95; v2 = 0.9·0.5 + 0.5 = 0.95, w2 = 0.95 − 0.095
    Assert.That(p1["w"].ToArray().[0], Is.EqualTo(0.95f).Within(1e-6f))
    Assert.That(p2["w"].ToArray().[0], Is.EqualTo(0.855f).Within(1e-6f))

[<Test>]
let ``Adam's first step moves each weight by the learning rate against the gradient sign`` () =
    let p = start ()
    let g = Parameters.grad quadratic p

    let p1, _ =
        Optim.adam
            { AdamConfig.Default with
                LearningRate = 0.01f
            }
            OptimizerState.Empty
            p
            g

    let moved = (p1["w"] - p["w"]).ToArray()
    let signs = g["w"].ToArray()

    for i in 0 .. moved.Length - 1 do
        Assert.That(moved[i], Is.EqualTo(-0.01f * float32 (sign signs[i])).Within(1e-5f))

[<Test>]
let ``SGD, Nesterov and Adam minimise a quadratic`` () =
    let run step =
        let mutable p = start ()
        let mutable s = OptimizerState.Empty

        for _ in 1..300 do
            let g = Parameters.grad quadratic p
            let p', s' = step s p g
            p <- p'
            s <- s'

        (quadratic p).ToScalar()

    Assert.That(
        run (
            Optim.sgd
                { SgdConfig.Default with
                    LearningRate = 0.05f
                }
        ),
        Is.LessThan 1e-4f
    )

    Assert.That(
        run (
            Optim.sgd
                { SgdConfig.Default with
                    LearningRate = 0.05f
                    Nesterov = true
                }
        ),
        Is.LessThan 1e-4f
    )

    Assert.That(
        run (
            Optim.adam
                { AdamConfig.Default with
                    LearningRate = 0.05f
                }
        ),
        Is.LessThan 1e-3f
    )

    Assert.That(
        run (
            Optim.adam
                { AdamConfig.Default with
                    LearningRate = 0.05f
                    WeightDecay = 1e-4f
                    Decoupled = true
                }
        ),
        Is.LessThan 1e-2f
    )

[<Test>]
let ``bad names and learning rates raise clear errors`` () =
    let p = start ()
    assertRaises<SnnSpecException> [ "missing"; "w, b" ] (fun () -> box p["missing"])

    assertRaises<SnnSpecException> [ "LearningRate" ] (fun () ->
        box (
            Optim.sgd
                { SgdConfig.Default with
                    LearningRate = 0.0f
                }
                OptimizerState.Empty
                p
                p
        ))

    assertRaises<SnnSpecException> [ "unique" ] (fun () ->
        box (Parameters.ofList [ "a", randn 1 [| 1 |]; "a", randn 1 [| 1 |] ]))
