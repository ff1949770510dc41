// The whole public API of nn.
#pragma once

#include "nn/autograd.h"
#include "nn/device.h"
#include "nn/dtype.h"
#include "nn/error.h"
#include "nn/generator.h"
#include "nn/ops.h"
#include "nn/parallel.h"
#include "nn/tensor.h"
