"""The gRPC transport (``grpc://`` base URLs): needs the ``[grpc]`` extra
(``pip install 'psr-reward-client[grpc]'``); imported only when a client is given one."""
