// The functional API in one include, like torch.nn.functional.
#pragma once
#include "autograd/engine.h"
#include "autograd/node.h"
#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/join.h"
#include "ops/linalg.h"
#include "ops/loss.h"
#include "ops/reduce.h"
#include "ops/softmax.h"
#include "ops/sort.h"
#include "ops/view.h"
#include "tensor/random.h"
