#ifndef VIGIL_CQB_SHIM_H
#define VIGIL_CQB_SHIM_H
#include <sys/types.h>
#include <sys/uio.h>
#include <qb/qbdefs.h>
#include <qb/qbloop.h>
#include <qb/qbipcs.h>
#include <qb/qbipcc.h>
#include <qb/qbipc_common.h>
#endif
