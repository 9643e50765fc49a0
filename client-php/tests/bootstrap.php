<?php

declare(strict_types=1);

require_once __DIR__ . '/../autoload.php';
require_once __DIR__ . '/ServerProcess.php';
require_once __DIR__ . '/BadServer.php';
