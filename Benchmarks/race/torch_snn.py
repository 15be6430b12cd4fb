#!/usr/bin/python3
"""PyTorch side of the speed race (docs/results/speed-race.md): trains SnnSpec's zoo ConvNet as an
SNN in plain PyTorch and prints one JSON line {imgs_per_s, peak_rss_mb, ...}.

Only PyTorch itself: a multi-step LIF written as a loop over T with an autograd surrogate spike,
the same conv/BN/linear layers as Zoo.convNet (Spec.FSharp/Models/Zoo.fs), the same neuron as
Neuron.lif (Spec.FSharp/Neurons/Neuron.fs), SGD + Nesterov momentum 0.9 with weight decay on
conv/linear weights only (TrainConfig.Default), CE on the time-mean logits, and for the KD step
the teacher in eval mode under no_grad plus CE + KL(tau = 4) on time-mean logits, weights 0.5/0.5
(SpecTerm.crossEntropy 0 0.5, SpecTerm.logitKd 4 0.5).

Run each configuration in a fresh process: peak RSS (ru_maxrss) is per process.
Best settings on Debian's torch 1.13: LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2,
ATEN_CPU_CAPABILITY=avx512, --threads 2 (Benchmarks/race/run.sh sets all three).
"""

import argparse
import json
import os
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SigmoidSpike(torch.autograd.Function):
    """S = Heaviside(x) (spike where H >= theta), dS/dx = alpha*sig(alpha x)*(1 - sig(alpha x))
    (Surrogate.Sigmoid 4, SpikingJelly's Sigmoid)."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * sg * (1.0 - sg), None


class MultiStepLIF(nn.Module):
    """Neuron.lif: Dynamics.Lif(tau = 2, decayInput = true), theta = 1, hard reset to 0 not
    detached, Sigmoid(4) surrogate. Input [T*B, ...] (time-flattened, like SnnSpec's Forward),
    H_t = V + (I_t - (V - v_r))/tau, S_t = Theta(H_t - theta), V_t = H_t (1 - S_t) + v_r S_t."""

    def __init__(self, steps, tau=2.0, theta=1.0, v_reset=0.0, alpha=4.0):
        super().__init__()
        self.steps, self.tau, self.theta, self.v_reset, self.alpha = steps, tau, theta, v_reset, alpha

    def forward(self, x):
        seq = x.view(self.steps, x.shape[0] // self.steps, *x.shape[1:])
        v = torch.full_like(seq[0], self.v_reset)
        out = []
        # unbind: one backward node for the whole sequence (indexing seq[t] would zero-fill a
        # full-size gradient per step in backward)
        for x_t in seq.unbind(0):
            h = v + (x_t - (v - self.v_reset)) / self.tau
            s = SigmoidSpike.apply(h - self.theta, self.alpha)
            v = h * (1.0 - s) + self.v_reset * s
            out.append(s)
        return torch.stack(out).flatten(0, 1)


def channels(c, width):
    # Zoo.channels: max 1 (round (c * Width)), halves away from zero.
    return max(1, int(c * width + 0.5))


class ConvNet(nn.Module):
    """Zoo.convNet ZooConfig.Mnist (width 1: teacher; width 0.5: student): conv3x3 c1 (no bias) -
    BN - LIF - maxpool2 - conv3x3 c2 (no bias) - BN - LIF - maxpool2 - flatten - fc1 h - LIF - fc 10.
    Stateless layers run on the [T*B, ...] tensor; BN statistics are over T*B (as Forward.fs)."""

    def __init__(self, steps, width=1.0, classes=10, side=28):
        super().__init__()
        c1, c2, h = channels(32, width), channels(64, width), channels(128, width)
        s = side // 2 // 2
        self.steps = steps
        self.conv1 = nn.Conv2d(1, c1, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1, eps=1e-5, momentum=0.1)
        self.lif1 = MultiStepLIF(steps)
        self.conv2 = nn.Conv2d(c1, c2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2, eps=1e-5, momentum=0.1)
        self.lif2 = MultiStepLIF(steps)
        self.fc1 = nn.Linear(c2 * s * s, h)
        self.lif_fc1 = MultiStepLIF(steps)
        self.fc = nn.Linear(h, classes)

    def forward(self, x):
        # Direct encoding: the static image repeated over T, time-flattened.
        b = x.shape[0]
        x = x.unsqueeze(0).expand(self.steps, *x.shape).reshape(self.steps * b, *x.shape[1:])
        x = F.max_pool2d(self.lif1(self.bn1(self.conv1(x))), 2, 2)
        x = F.max_pool2d(self.lif2(self.bn2(self.conv2(x))), 2, 2)
        x = self.lif_fc1(self.fc1(torch.flatten(x, 1)))
        logits = self.fc(x)
        return logits.view(self.steps, b, -1)  # [T, B, K]


def optimizer(model, lr=0.1, wd=5e-4):
    # TrainConfig.Default: SGD + Nesterov 0.9, weight decay 5e-4 skipping BN and biases.
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.dim() > 1)]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
        momentum=0.9,
        nesterov=True,
    )


def kl_tau(teacher, student, tau):
    # Tensor.klDivLogits: tau^2 * mean_b sum_k pT (log pT - log pS).
    log_pt = F.log_softmax(teacher / tau, 1)
    log_ps = F.log_softmax(student / tau, 1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean() * (tau * tau)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["teacher", "student", "kd"], required=True)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    base_rss = current_rss_mb()

    # Synthetic MNIST-shaped batch (uint8 pixels / 255) and labels i mod 10, reused every step.
    x = torch.randint(0, 256, (a.batch, 1, 28, 28), dtype=torch.uint8).float() / 255.0
    y = torch.arange(a.batch) % 10

    if a.model == "kd":
        teacher = ConvNet(a.T, 1.0).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        student = ConvNet(a.T, 0.5).train()
    else:
        teacher = None
        student = ConvNet(a.T, 1.0 if a.model == "teacher" else 0.5).train()
    opt = optimizer(student)

    def step():
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(x).mean(0)
        opt.zero_grad(set_to_none=True)
        s_logits = student(x).mean(0)
        loss = F.cross_entropy(s_logits, y)
        if teacher is not None:
            loss = 0.5 * loss + 0.5 * kl_tau(t_logits, s_logits, 4.0)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    elapsed = time.perf_counter() - t0

    print(
        json.dumps(
            {
                "framework": "pytorch",
                "version": torch.__version__,
                "model": a.model,
                "T": a.T,
                "batch": a.batch,
                "steps": a.steps,
                "threads": torch.get_num_threads(),
                "allocator": "jemalloc" if "jemalloc" in os.environ.get("LD_PRELOAD", "") else "glibc",
                "cpu_capability": torch.backends.cpu.get_cpu_capability()
                if hasattr(torch.backends, "cpu")
                else os.environ.get("ATEN_CPU_CAPABILITY", ""),
                "imgs_per_s": a.batch * a.steps / elapsed,
                "step_ms": 1000.0 * elapsed / a.steps,
                "peak_rss_mb": peak_rss_mb(),
                "base_rss_mb": base_rss,
                "loss": loss,
            }
        )
    )


if __name__ == "__main__":
    main()
