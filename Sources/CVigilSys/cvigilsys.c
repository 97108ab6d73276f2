#include "cvigilsys.h"
