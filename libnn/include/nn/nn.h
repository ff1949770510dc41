// The whole public API of nn.
#pragma once

#include "nn/autograd.h"
#include "nn/cuda.h"
#include "nn/device.h"
#include "nn/dtype.h"
#include "nn/error.h"
#include "nn/finite.h"
#include "nn/generator.h"
#include "nn/init.h"
#include "nn/io/safetensors.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/named_layers.h"
#include "nn/ops.h"
#include "nn/optim.h"
#include "nn/parallel.h"
#include "nn/tensor.h"
